"""The built-in run configs, installed as package data of :mod:`mlgrad.configs`: `mlgrad
configs` lists them and `mlgrad train NAME` runs one by name (:func:`mlgrad.find_config`)."""
