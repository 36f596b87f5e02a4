"""GPIO devices (panic button, siren, light, status LED) on gpiozero, and a Jetson pin layer."""
