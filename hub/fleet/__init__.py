"""Fleet management: presence, Ed25519-signed remote configuration and upgrades over MQTT."""
