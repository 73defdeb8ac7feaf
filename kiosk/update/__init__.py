"""Field updates of the kiosk application: signed releases, verified before anything of them runs.

:mod:`kiosk.update.release` owns the release format and its verification; ``kiosk-fleet
release`` (:mod:`kiosk.fleet.release`) makes the agency's key and builds and signs releases with
it, and the kiosk checks each download with the same code against the public key in its image.
docs/updates.md tells the whole flow.
"""
