"""The YAML configs shipped with fdem (training under ``configs/``, benchmarks under ``configs/bench/``),
installed as package data so that ``fdem demo`` works from any directory."""
