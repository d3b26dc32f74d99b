"""Off-consensus price feeds: venue endpoint definitions (``venues``) and the venue simulator (``simulator``)."""
