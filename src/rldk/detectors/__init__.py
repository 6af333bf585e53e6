"""The onset-aware detector core every rule is built on.

* :mod:`.scale` puts a series on the scale its quantity's noise lives on
  (``rldk.semantics`` kinds: log for log-scale and positive quantities, arcsine-root
  for ratios) and measures that noise robustly from the series itself;
* :mod:`.changepoint` cuts the series into regimes of constant mean (exact PELT),
  with a penalty taken from that noise;
* :mod:`.regimes` describes the regimes (level, spread, steps) so that a rule asks
  questions such as "from which step does the series stay collapsed?"; the answer's
  first step is the onset;
* :mod:`.trend` judges sustained moves of noisy levels (a return that lost what it had
  gained and stays down), with the standard error of a level from the series' own noise
  and wander;
* :mod:`.moves` finds where a move into a bad state started: the first point out of the
  band of the level held before it, or the one logged step that jumped past its midpoint;
* :mod:`.rules` and :mod:`.ratios` say what a regime change of each quantity means
  (an :class:`~.event.Event` from its onset step, with its evidence).

Nothing here assumes the start of a run is healthy; nothing imports above
``rldk.semantics``.
"""
