"""The page checks input as it is typed with the API's own rules: ``app/web/js/rules.js``, run
in the browser, accepts and refuses exactly what ``app/validation.py`` does — for names,
release versions and port lists, on fixed cases and on a few hundred random ones."""

from __future__ import annotations

import random
import string
from typing import Any

from app.settings import REPO_ROOT
from app.validation import PortInput, name_errors, ports_errors, version_errors

RULES = REPO_ROOT / "app" / "web" / "js" / "rules.js"
ORIGIN = "http://rules.test"

NAMES = ["box", "a", "a-b", "a--b", "-a", "a-", "1a", "Ab", "a_b", "a.b", "", "a" * 63, "a" * 64]
VERSIONS = [
    "v1",
    "1.2",
    "v1.2.3-rc.1",
    "v1.2.3+build.5",
    "1.2.3.4",
    "v",
    "",
    "x1",
    "v1.",
    "1" * 129,
]
PORT_LISTS: list[list[dict[str, Any]]] = [
    [{"port": 8080, "name": "http"}],
    [{"port": 22, "name": ""}],
    [{"port": 2222, "name": ""}],
    [{"port": 0, "name": "x"}],
    [{"port": 65536, "name": "x"}],
    [{"port": 80, "name": ""}, {"port": 80, "name": "b"}],
    [{"port": 80, "name": "web"}, {"port": 81, "name": "web"}],
    [{"port": 80, "name": "123"}],
    [{"port": 80, "name": "a--b"}],
    [{"port": 80, "name": "abcdefghijklmnop"}],
    [{"port": 80, "name": "Web"}],
]


def random_strings(alphabet: str, count: int, longest: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(0, longest))) for _ in range(count)]


def differences(inputs: list[Any], page: list[bool], api: list[bool]) -> list[Any]:
    """The inputs that one refuses and the other accepts."""
    return [value for value, a, b in zip(inputs, page, api, strict=True) if a != b]


PAGE = "<script type=module>import * as r from '/rules.js'; window.rules = r;</script>"


async def rules_page(browser: Any) -> Any:
    page = await browser.new_page()

    async def serve(route: Any) -> None:
        if route.request.url.endswith("/rules.js"):
            body = RULES.read_text()
            await route.fulfill(body=body, content_type="text/javascript")
        else:
            await route.fulfill(body=PAGE, content_type="text/html")

    await page.route(f"{ORIGIN}/**", serve)
    await page.goto(f"{ORIGIN}/")
    await page.wait_for_function("window.rules !== undefined")
    return page


async def test_the_page_accepts_and_refuses_what_the_api_does(browser: Any) -> None:
    page = await rules_page(browser)
    names = NAMES + random_strings(string.ascii_lowercase[:4] + "-0_A9.", 300, 12, seed=1)
    versions = VERSIONS + random_strings("v0123.-+rcA_", 300, 10, seed=2)
    seen = await page.evaluate(
        "([names, versions, portLists]) => ({"
        " names: names.map((n) => window.rules.nameProblem(n) !== ''),"
        " versions: versions.map((v) => window.rules.versionProblem(v) !== ''),"
        " ports: portLists.map((p) => window.rules.portProblems(p, 2222)"
        "   .some((x) => x.port !== '' || x.name !== '')),"
        "})",
        [names, versions, PORT_LISTS],
    )
    expected_names = [bool(name_errors(n, ["input", "name"])) for n in names]
    expected_versions = [bool(version_errors(v, ["input", "version"])) for v in versions]
    expected_ports = [
        bool(
            ports_errors(
                [PortInput(name=p["name"] or None, port=p["port"]) for p in ports],
                ["input", "ports"],
                ssh_port=2222,
            )
        )
        for ports in PORT_LISTS
    ]
    assert any(expected_names)
    assert not all(expected_names)
    assert differences(names, seen["names"], expected_names) == []
    assert differences(versions, seen["versions"], expected_versions) == []
    assert differences(PORT_LISTS, seen["ports"], expected_ports) == []
    await page.close()
