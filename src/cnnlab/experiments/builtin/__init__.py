"""The built-in experiments, one declaration a module; importing the package registers them all."""
