"""The studies room: a study's runs, their launchers (local pool, Ray), its report and plots."""
