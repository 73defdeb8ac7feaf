"""The ops and programme console (``kiosk-fleet serve``): server-rendered pages over the central
store, for viewers and operators. Every figure comes from the store's own modules
(:mod:`kiosk.fleet.status`, :mod:`kiosk.fleet.statistics`, :mod:`kiosk.fleet.command`); the
console holds no personal data because the store holds none."""
