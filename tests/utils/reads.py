"""A spy on the files ingest reads (the real functions still run)."""

from __future__ import annotations


def file_reads(monkeypatch) -> list[str]:
    """Every file ingest opens from now on (the real functions still run)."""
    from sluice.warehouse import sources

    opened: list[str] = []
    for module, name in ((sources, "sha256"), (sources.eventlog, "read_complete"),
                         (sources, "_open")):
        real = getattr(module, name)

        def spy(path, *args, _real=real, **kwargs):
            opened.append(str(path))
            return _real(path, *args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    return opened
