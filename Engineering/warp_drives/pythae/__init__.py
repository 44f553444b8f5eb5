"""warp_drives/pythae package."""
