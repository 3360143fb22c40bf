"""Over-the-air updates: the device's receiver, staging and worker; the operator's push."""
