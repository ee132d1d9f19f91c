"""Field-protocol drivers: each turns bytes or frames from one kind of device into hub records."""
