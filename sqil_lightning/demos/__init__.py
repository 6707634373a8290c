"""The demos room: the demo file format and its checks, the experts that record demos, Minari datasets."""
