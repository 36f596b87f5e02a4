"""The alarm: panic button -> siren and lights at once, events and protected clips after."""
