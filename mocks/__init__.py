"""Mock ORR, ICE and EOIR services over one deterministic synthetic world (never imports gateway/)."""
