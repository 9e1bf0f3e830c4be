"""A study's results page from its DVC experiments: `collect` reads the experiments (git and the DVC cache) into
two files beside the page, every record the page uses and everything else it shows; `tables` computes its numbers
from the records (estimates.py); `page` writes it from `templates/study.md`. The same two files give the same page,
byte for byte, wherever it is rendered."""
