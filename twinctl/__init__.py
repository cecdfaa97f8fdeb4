"""twinctl: administration of the desk/mobile twinning service."""
