"""Training data: the procedural toyfaces set (``toyfaces``) and image datasets and loaders
(``datasets``). Import the submodules directly; this package imports nothing heavy."""
