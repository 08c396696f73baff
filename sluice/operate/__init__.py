"""Operating a Sluice home: backup and restore, format upgrades, the doctor's checks."""
