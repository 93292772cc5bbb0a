SELECT EXISTS (SELECT FROM pgfleet.targets WHERE is_current)
