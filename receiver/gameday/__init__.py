"""Game days: scenarios (:mod:`.scenario`), starting and ending a drill (:mod:`.drill`), and
the drill's report (:mod:`.steps` evaluates the expected steps, :mod:`.report` renders)."""
