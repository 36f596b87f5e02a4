"""MQTT link to the city's broker: status, health, durable events, signed commands."""
