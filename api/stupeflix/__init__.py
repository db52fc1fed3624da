"""The Stupeflix surface (seeds 000-002): ``/v1`` and ``/v2`` create, status and their
streams (``routes``), the v1 file routes (``files``), the storage routes (``storage``),
and its tasks on the run gateway (``tasks``)."""
