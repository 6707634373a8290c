"""The envs room: making envs, pixels, start states, the tasks' own envs, evaluating a policy on episodes."""
