"""Demo and test rigs: an emulated Thai ID card behind a private pcscd + vpcd, and a local
Mosquitto with the fleet's production policy.

They ship in the package because ``kiosk demo`` runs them, but a real kiosk never does: the card
stack needs vsmartcard-vpcd, which the appliance image never contains (provisioning/chroot_script).
Nothing outside ``kiosk.rigs`` except the demo, script playback and the tests may import them.
"""
