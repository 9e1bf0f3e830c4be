"""Text generation behind one interface (Generator, Request), its backends and the generation cache."""
