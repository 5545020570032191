#!/usr/bin/env python3
"""Takes the screenshots of docs/explorer.md from a translator step's explorer page.

    build/examples/translate --steps 2 --eval-every 1000 --test-size 8 --explore /tmp/step.html
    /usr/bin/python3 tools/explorer_screenshots.py /tmp/step.html docs/images/explorer

Drives the page through its own functions (stage, reveal, tabs) in headless Chromium, the way
tests/explore/browser_check.py opens it, and writes one PNG per step of the walk-through.
Needs Debian's chromium, chromium-driver and python3-selenium.
"""

import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def main():
    page, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,820",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    js = browser.execute_script

    def shot(name):
        time.sleep(0.3)
        browser.save_screenshot(os.path.join(out, name + ".png"))
        print("wrote", os.path.join(out, name + ".png"))

    browser.get("file://" + os.path.abspath(page))
    while js("return document.body.dataset.ready") != "true":
        time.sleep(0.05)
    shot("1_overview")

    # Find the attention: the first encoder layer's self-attention, just after attention fusion.
    fusion = js("return DATA.stages.findIndex((s) => s.name === 'attention_fusion');")
    fused = js("""const g = stageGraph(arguments[0]);
                  for (const r of g.nodes.values())
                    if (r.o === 'fused_attention' && r.s.includes('encoder/layer0')) return r.n;""", fusion)
    js("view.expanded.clear(); reveal(arguments[0], arguments[1]);", fused, fusion)
    shot("2_attention_fused")
    # The same scopes one stage earlier: the chain of matmul, scale, mask, softmax and matmul.
    js("setStage(arguments[0] - 1);", fusion)
    js("const g = stageGraph(arguments[0] - 1); for (const r of g.nodes.values())"
       " if (r.o === 'exp' && r.s.includes('encoder/layer0/self_attn')) { select(r.n); centerOn('node:' + r.n); break; }",
       fusion)
    shot("3_attention_before")
    js("setStage(arguments[0]); showTab('passes');", fusion)
    shot("4_fusion_log")
    js("showTab('memory');")
    shot("5_memory")
    js("showTab('time');")
    shot("6_time")
    js("document.getElementById('roofline').scrollIntoView();")
    shot("7_roofline")
    browser.quit()


if __name__ == "__main__":
    main()
