"""The ``kiosk-fleet`` command for central ops: collect, status, command, provision, registry,
stats, simulate, the console (serve, users), signed releases (release) and their staged
rollout (rollout), and the kiosks' certificates: signing renewals (ca), revoking (revoke) and
the revocation list (crl)."""

import sys

from kiosk.cli import run_verbs

VERBS = {
    "collect": ("kiosk.fleet.collector", "receive kiosk messages, store them, acknowledge them"),
    "status": ("kiosk.fleet.status", "a line per kiosk: state, health, open alarms"),
    "command": ("kiosk.fleet.command", "send ping, rebirth, replay or config; print replies"),
    "provision": ("kiosk.fleet.provision", "turn an agency CSV into one bundle per kiosk"),
    "registry": ("kiosk.fleet.registry", "import the programme's service points, with history"),
    "stats": ("kiosk.fleet.statistics", "the published statistics of a date range, as CSV"),
    "simulate": ("kiosk.fleet.simulate", "run simulated kiosks on a broker, over the contract"),
    "serve": ("kiosk.fleet.console.serve", "the web console: fleet, statistics, commands"),
    "users": ("kiosk.fleet.console.users", "add, remove, list the console's users; passwd"),
    "rollout": ("kiosk.fleet.rollouts", "send a release to a share of the fleet; pause, widen, "
                                        "resume; progress per kiosk"),
    "release": ("kiosk.fleet.release", "the release signing key; build and verify releases"),
    "ca": ("kiosk.fleet.ca", "sign the certificate renewals kiosks request over MQTT"),
    "revoke": ("kiosk.fleet.revoke", "cut a stolen or retired kiosk off the broker for good"),
    "crl": ("kiosk.fleet.crl", "issue the CA's revocation list again before it expires"),
}


def main(argv=None):
    sys.exit(run_verbs("kiosk-fleet", VERBS, sys.argv[1:] if argv is None else argv))
