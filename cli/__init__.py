"""The `sluice` command line: runs flows, serves the API, manages trackers and filters."""
