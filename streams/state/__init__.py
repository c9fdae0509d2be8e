"""State the workers keep and read: Redis hot state (per-lead processor state, its key layout, one
packed round trip per batch) and the control plane as workers see it (revision-checked caches of
workflows, subscriptions and connections; the secret box that opens sealed secrets)."""

from processors.stale_build import refuse_stale_extensions

refuse_stale_extensions(__path__[0])
