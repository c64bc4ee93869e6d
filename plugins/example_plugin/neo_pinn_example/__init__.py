"""Example third-party neo_pinn plugin (template)."""
