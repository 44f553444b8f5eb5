"""warp_drives package."""
