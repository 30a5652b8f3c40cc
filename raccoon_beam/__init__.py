"""raccoon-beam: an Apache Beam sink for Raccoon."""
