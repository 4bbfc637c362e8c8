"""A record that holds a trial's run open: the first ``free`` trials pass, later ones wait in it until the
file ``go`` appears in ``folder`` (the sweep resume test kills its driver while trials wait here, so the kill
lands inside open runs every time, not by the luck of timing). Module-level, so Dask workers import it."""
from __future__ import annotations

import os
import time
from itertools import count


class Gate:
    def __init__(self, folder: str, free: int = 2, timeout: float = 300, recorder=None, **kwargs):
        self.folder, self.free, self.timeout = folder, free, timeout

    def generate(self, **kwargs) -> None:
        os.makedirs(self.folder, exist_ok=True)
        for ticket in count():  # each run takes the next number (the file is made once, by one process)
            try:
                os.close(os.open(os.path.join(self.folder, f"ticket{ticket}"), os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                continue
        deadline = time.time() + self.timeout
        while ticket >= self.free and not os.path.exists(os.path.join(self.folder, "go")):
            if time.time() > deadline:
                raise TimeoutError(f"ticket {ticket} waited {self.timeout} s for {self.folder}/go")
            time.sleep(0.05)
