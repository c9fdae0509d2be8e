"""Pure domain logic of DripPulse: what a workflow is and what it decides.

Nothing here performs I/O. Given the same event, workflow version and routing state, every
function returns the same answer, which is what makes replays after a crash harmless. (The one
exception runs once, at import: `stale_build` checks that a compiled build of the hot path is not
older than its sources.)
"""

from processors.stale_build import refuse_stale_extensions

refuse_stale_extensions(__path__[0])
