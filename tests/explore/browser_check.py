#!/usr/bin/env python3
"""Opens an explorer page (explore/explorer.h) in headless Chromium and uses it as a reader would.

    python3 tests/explore/browser_check.py PAGE.html SCREENSHOT_DIR

Checks, each with real clicks through Selenium and chromium-driver (Debian's chromium,
chromium-driver and python3-selenium; tools/install_deps.sh installs them):
  1. the page loads without console errors and is ready in under 2 s;
  2. clicking a folded scope unfolds it: its box becomes a drawn cluster with its contents;
  3. selecting a forward node whose gradient rule built nodes highlights them (or the folded
     boxes that hold them), and selecting one of those gradient nodes highlights it back;
  4. stepping through the passes with the stage bar reaches attention_fusion, whose rewritten
     nodes are marked, and whose fusion log in the Passes view lists a fused candidate;
  5. clicking a bar of the memory timeline selects the node whose value the buffer holds;
  6. the Time and Values views draw (the step was profiled and observed).
Saves a screenshot after each into SCREENSHOT_DIR. Exits 0 when all hold, 1 when one fails, and
77 (CTest's "skipped") with the reason printed when Selenium or Chromium is missing.
"""

import json
import os
import shutil
import sys
import time

SKIP = 77
LOAD_LIMIT_MS = 2000


def skip(reason):
    print(f"SKIPPED: {reason}")
    sys.exit(SKIP)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def open_browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip("python3-selenium is not installed (tools/install_deps.sh installs it)")
    chromium, driver = find_chromium(), shutil.which("chromedriver")
    if not chromium or not driver:
        skip("chromium or chromium-driver is not installed (tools/install_deps.sh installs them)")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1000", "--allow-file-access-from-files"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


class Check:
    def __init__(self, browser, shots):
        self.browser, self.shots, self.failures = browser, shots, []

    def js(self, script, *args):
        return self.browser.execute_script(script, *args)

    def expect(self, condition, message):
        print(("ok    " if condition else "FAIL  ") + message)
        if not condition:
            self.failures.append(message)

    def shot(self, name):
        self.browser.save_screenshot(os.path.join(self.shots, name + ".png"))

    def console_errors(self):
        return [entry for entry in self.browser.get_log("browser") if entry.get("level") == "SEVERE"]

    def click(self, css):
        from selenium.webdriver.common.by import By
        element = self.browser.find_element(By.CSS_SELECTOR, css)
        # A drawn item may lie outside the window: pan the drawing to it first, as a reader would
        # (the page's own centring), then click the shape inside the group (SVG groups have no
        # size of their own for WebDriver).
        if element.get_attribute("data-item"):
            self.js("centerOn(arguments[0].dataset.item);", element)
        target = element.find_element(By.CSS_SELECTOR, "rect") if element.tag_name == "g" else element
        self.js("arguments[0].scrollIntoView({block: 'center'});", target)
        from selenium.webdriver.common.action_chains import ActionChains
        ActionChains(self.browser).move_to_element(target).click().perform()
        time.sleep(0.15)

    def wait_until(self, script, seconds=10.0):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.js(script):
                return True
            time.sleep(0.05)
        return False


def check_load(c, page):
    started = time.time()
    c.browser.get("file://" + os.path.abspath(page))
    ready = c.wait_until("return document.body && document.body.dataset.ready === 'true'")
    wall_ms = (time.time() - started) * 1e3
    ready_ms = float(c.js("return document.body.dataset.readyMs || 'NaN'"))
    size = os.path.getsize(page)
    c.expect(ready, "the page became ready")
    c.expect(ready_ms < LOAD_LIMIT_MS, f"ready {ready_ms:.0f} ms after navigation began (limit {LOAD_LIMIT_MS}); "
                                      f"{wall_ms:.0f} ms as the driver saw it; file {size / 1e6:.2f} MB")
    errors = c.console_errors()
    c.expect(not errors, f"no console errors ({errors[:3]})")
    c.shot("1_graph_folded")
    return {"ready_ms": ready_ms, "driver_ms": wall_ms, "bytes": size}


def check_unfold(c):
    scope = c.js("""const groups = [...document.querySelectorAll('#viewport .group')];
                    groups.sort((a, b) => +b.querySelector('.count').textContent.split(' ')[0] -
                                          +a.querySelector('.count').textContent.split(' ')[0]);
                    return groups.length ? groups[0].dataset.scope : null;""")
    c.expect(scope is not None, "the page opens with folded scopes")
    if scope is None:
        return
    c.click(f'#viewport .group[data-scope="{scope}"]')
    opened = c.js("return !!document.querySelector(`#viewport .cluster[data-scope=\"${arguments[0]}\"]`);", scope)
    inside = c.js("""return [...document.querySelectorAll('#viewport .node, #viewport .group')]
                      .filter((e) => (e.dataset.name || e.dataset.scope || '').startsWith(arguments[0] + '/')).length;""", scope)
    c.expect(opened and inside > 0, f"clicking the folded scope '{scope}' unfolds it ({inside} items inside)")
    c.shot("2_scope_unfolded")


def check_gradient_links(c):
    # A forward matmul whose rule built gradient nodes, from the page's own data.
    name = c.js("""const g = stageGraph(DATA.stages.length - 1);
                   for (const r of g.nodes.values()) if (r.r === 0 && r.o === 'matmul' && (g.gradients.get(r.n) || []).length) return r.n;
                   return null;""")
    c.expect(name is not None, "the step has a forward matmul with gradient nodes (Node::gradient_of)")
    if name is None:
        return
    search = c.browser.find_element("id", "search")
    search.clear()
    search.send_keys(name)
    c.wait_until("return !document.getElementById('search-results').hidden")
    c.click(f'#search-results li[data-node="{name}"]')
    c.click(f'#viewport .node[data-name="{name}"]')
    selected = c.js("return document.querySelector('#viewport .node.selected')?.dataset.name;")
    related = c.js("return document.querySelectorAll('#viewport .related').length;")
    listed = c.js("return document.querySelectorAll('#details li a.node-link').length;")
    c.expect(selected == name, f"clicking '{name}' selects it")
    c.expect(related > 0, f"its gradient nodes are highlighted ({related} drawn items marked)")
    c.shot("3_gradient_links")
    gradient = c.js("return (stageGraph(DATA.stages.length - 1).gradients.get(arguments[0]) || [])[0];", name)
    c.js("reveal(arguments[0]);", gradient)
    c.click(f'#viewport .node[data-name="{gradient}"]')
    back = c.js("return [...document.querySelectorAll('#viewport .node.related')].map((e) => e.dataset.name);")
    c.expect(name in back, f"selecting the gradient node '{gradient}' highlights its forward node (listed {listed} links)")
    c.shot("4_gradient_to_forward")


def check_fusion_stage(c):
    c.js("setStage(0); fit();")
    names = c.js("return DATA.stages.map((s) => s.name);")
    c.expect("attention_fusion" in names, f"the stages include attention_fusion ({', '.join(names)})")
    if "attention_fusion" not in names:
        return
    for _ in range(len(names)):
        if c.js("return DATA.stages[view.stage].name;") == "attention_fusion":
            break
        c.click("#stage-next")
    at = c.js("return DATA.stages[view.stage].name;")
    marked = c.js("return document.querySelectorAll('#viewport .changed, #viewport .added').length;")
    c.expect(at == "attention_fusion", "the stage bar steps to attention_fusion")
    c.expect(marked > 0, f"the fused attention is marked in the graph ({marked} items marked)")
    c.shot("5_fusion_stage")
    c.click("#tab-passes")
    fused = c.js("return [...document.querySelectorAll('#fusion-log .fused')].length;")
    c.expect(fused > 0, f"the fusion log lists {fused} fused attention candidate(s)")
    c.shot("6_fusion_log")


def check_memory(c):
    c.click("#tab-memory")
    index = c.js("""const bars = [...document.querySelectorAll('.mem-bar')];
                    bars.sort((a, b) => b.getAttribute('height') * b.getAttribute('width') - a.getAttribute('height') * a.getAttribute('width'));
                    return bars.length ? bars[0].dataset.buffer : null;""")
    c.expect(index is not None, "the memory timeline has bars")
    if index is None:
        return
    c.click(f'.mem-bar[data-buffer="{index}"]')
    expected = c.js("return producerName(DATA.memory.buffers[+arguments[0]][4][0]);", index)
    shown = c.js("return document.querySelector('#details h2')?.textContent;")
    c.expect(shown == expected, f"clicking buffer #{index} selects its node '{expected}' (details show '{shown}')")
    c.shot("7_memory")


def check_time_and_values(c):
    c.click("#tab-time")
    rows = c.js("return document.querySelectorAll('#time-table tr[data-node]').length;")
    dots = c.js("return document.querySelectorAll('#roofline-chart .point').length;")
    c.expect(rows > 0 and dots > 0, f"the Time view lists {rows} nodes and places {dots} on the roofline")
    c.shot("8_time")
    c.click("#tab-values")
    values = c.js("return document.querySelectorAll('#values-table tr[data-value]').length;")
    c.expect(values > 0, f"the Values view lists {values} values")
    c.shot("9_values")
    errors = c.console_errors()
    c.expect(not errors, f"no console errors after all that ({errors[:3]})")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    page, shots = sys.argv[1], sys.argv[2]
    if not os.path.exists(page):
        print(f"FAIL  {page} does not exist")
        return 1
    os.makedirs(shots, exist_ok=True)
    browser = open_browser()
    c = Check(browser, shots)
    try:
        figures = check_load(c, page)
        check_unfold(c)
        check_gradient_links(c)
        check_fusion_stage(c)
        check_memory(c)
        check_time_and_values(c)
    finally:
        browser.quit()
    figures["failures"] = c.failures
    with open(os.path.join(shots, "browser_check.json"), "w") as f:
        json.dump(figures, f, indent=1)
    print(f"screenshots in {shots}")
    print(json.dumps(figures))
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
