"""Validation bundles (data for a device) and the devices that run them."""
