"""How central ops learn what happens: the message contract, the outbox, the MQTT adapter."""
