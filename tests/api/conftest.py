from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def served_sandboxes():
    """Both sandboxes on loopback ports: the admin API logs in to them like to real accounts."""
    from tools.sandboxes.alfacrm import AlfaCrmSandbox
    from tools.sandboxes.common import ServedApp
    from tools.sandboxes.uis import UisSandbox

    alfacrm, uis = AlfaCrmSandbox(), UisSandbox()
    served = [ServedApp(alfacrm.app).start(), ServedApp(uis.app).start()]
    yield {"alfacrm": alfacrm, "uis": uis, "alfacrm_url": served[0].url, "uis_url": f"{served[1].url}/v2.0"}
    for s in served:
        s.stop()
