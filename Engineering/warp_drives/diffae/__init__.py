"""warp_drives/diffae package."""
