"""The learners room: the update loop, soft-Q, SAC, SQIL-T, GAIL, BC, the soft Bellman target, networks, policies."""
