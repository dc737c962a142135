#!/usr/bin/env python3
"""Browser test of the dev console, in headless Chromium.

Starts `connector dev` (the built binary), opens its console in Chromium, and drives the page
as a person would, through the DevTools protocol: starts a conversation, chats through the demo
flow to a handover, joins and answers as the agent, lets the agent leave, and waits for the bot
to take the conversation back. Saves a screenshot to docs/console.png. Exits 1 on any failure.

Needs: Debian's `chromium` and PyPI's `websocket-client` (scripts/setup.sh installs both)."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client

repo = pathlib.Path(__file__).resolve().parent.parent
binary = repo / ".build" / "debug" / "connector"
console_port = int(os.environ.get("CONSOLE_PORT", "8088"))
debug_port = int(os.environ.get("CHROMIUM_DEBUG_PORT", "9333"))


def fail(message):
    sys.exit(f"browser test: {message}")


class Page:
    """A Chromium tab driven over the DevTools protocol."""

    def __init__(self, url):
        self.socket = websocket.create_connection(url, timeout=30)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    fail(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            fail(f"script failed: {expression[:120]}: {result['exceptionDetails'].get('text')} {result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result.get("result", {}).get("value")

    def wait(self, expression, what, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.2)
        fail(f"timed out waiting for {what}; customer pane: {self.evaluate(TEXT('customer-messages'))!r}")


def TEXT(element_id):
    return f"document.getElementById({json.dumps(element_id)}).innerText"


def contains(element_id, text):
    return f"{TEXT(element_id)}.includes({json.dumps(text)})"


def click_button(container_id, label):
    """Clicks the last button with this label inside the container."""
    return (f"(() => {{ const b = [...document.getElementById({json.dumps(container_id)}).querySelectorAll('button')]"
            f".filter(b => b.textContent === {json.dumps(label)}).pop(); if (!b) return false; b.click(); return true; }})()")


def type_and_send(input_id, form_id, text):
    return (f"(() => {{ const i = document.getElementById({json.dumps(input_id)}); i.value = {json.dumps(text)};"
            f" i.dispatchEvent(new Event('input')); document.getElementById({json.dumps(form_id)}).requestSubmit(); return true; }})()")


def main():
    if not binary.exists():
        fail(f"{binary} is missing: build first (swift build)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        fail("chromium is missing: run scripts/setup.sh (apt-get install chromium)")

    dev = subprocess.Popen([str(binary), "dev", "--config", "connector.yaml", "--port", str(console_port)], cwd=repo,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    profile = tempfile.mkdtemp(prefix="console-test-")
    browser = None
    try:
        console_url = None
        deadline = time.time() + 120
        while time.time() < deadline and console_url is None:
            line = dev.stdout.readline()
            if not line:
                fail("connector dev exited before printing the console's URL")
            if line.strip().startswith("console"):
                console_url = line.split()[-1]
        if console_url is None:
            fail("connector dev did not print the console's URL")
        print(f"browser test: connector dev serves {console_url}")

        browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                    f"--remote-debugging-port={debug_port}", f"--user-data-dir={profile}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets = None
        deadline = time.time() + 60
        while time.time() < deadline and not targets:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=5) as response:
                    targets = [t for t in json.load(response) if t.get("type") == "page"]
            except OSError:
                time.sleep(0.5)
        if not targets:
            fail("chromium did not open its DevTools port")
        page = Page(targets[0]["webSocketDebuggerUrl"])
        page.call("Emulation.setDeviceMetricsOverride", width=1440, height=900, deviceScaleFactor=1, mobile=False)
        page.call("Page.enable")
        page.call("Page.navigate", url=console_url)
        page.wait("document.readyState === 'complete' && !!document.getElementById('new-conversation')", "the console page")

        # The customer starts a conversation and says hello.
        page.evaluate("document.getElementById('new-conversation').click(), true")
        page.wait(f"{TEXT('conversation-id')}.startsWith('console-')", "a new conversation")
        page.evaluate(type_and_send("customer-input", "customer-form", "hello"))
        page.wait(contains("customer-messages", "I'm the demo bot"), "the bot's greeting")
        page.wait("document.querySelectorAll('#customer-messages button.quick-reply').length >= 3", "the quick replies")

        # A quick reply, then a handover.
        page.wait(click_button("customer-messages", "My balance"), "the 'My balance' quick reply")
        page.wait(contains("customer-messages", "Your balance is 1,234.56 EUR."), "the balance")
        page.wait(click_button("customer-messages", "Talk to a person"), "the 'Talk to a person' quick reply")
        page.wait(contains("customer-messages", "connecting you with a colleague"), "the handover message")
        page.wait("document.getElementById('agent-pane').className !== 'idle'", "the agent's desk")
        page.wait(contains("agent-status", "waiting in queue 101"), "the conversation waiting in queue 101")

        # The agent joins, answers, and leaves; the bot takes the conversation back.
        page.evaluate("document.getElementById('agent-join').click(), true")
        page.wait("!document.getElementById('agent-input').disabled", "the agent joined")
        page.evaluate(type_and_send("agent-input", "agent-form", "Hello Jane, Tom here. Your card is unblocked."))
        page.wait(contains("customer-messages", "Tom here"), "the agent's message at the customer")
        page.evaluate(type_and_send("customer-input", "customer-form", "thanks Tom"))
        page.wait(contains("agent-messages", "thanks Tom"), "the customer's message at the agent")
        page.evaluate("document.getElementById('agent-leave').click(), true")
        page.wait(contains("customer-messages", "I'm back. Was your question answered?"), "the bot taking the conversation back")
        page.wait("document.querySelectorAll('#customer-messages button.quick-reply').length >= 9", "the menu after the handback")
        time.sleep(1)  # the bot says nothing more: the customer's message during the handover got no answer
        count = page.evaluate("[...document.querySelectorAll('#customer-messages .msg.bot')].filter(m => m.innerText.includes('What would you like to do?')).length")
        if count != 2:  # after the greeting and after the handback
            fail(f"the menu appeared {count} times, not twice: the customer's message to the agent ran the flow")
        page.wait("document.querySelectorAll('#log li').length > 10", "the event log")
        page.wait("document.querySelectorAll('#lag-table tbody tr').length === 2", "the lag panel")
        page.wait(f"{TEXT('latency')}.includes('p99')", "the end-to-end latency")
        time.sleep(0.5)

        shot = page.call("Page.captureScreenshot", format="png")
        docs = repo / "docs"
        docs.mkdir(exist_ok=True)
        import base64
        (docs / "console.png").write_bytes(base64.b64decode(shot["data"]))

        # A card's link action opens web and phone addresses only: a javascript: one (user text
        # in a flow's url) must not run in the console.
        opened = page.evaluate("""(() => {
            const calls = [];
            window.open = (url) => { calls.push(url); };
            const card = adaptiveCard({ body: [], actions: [
                { type: "Action.OpenUrl", title: "script", url: "javascript:window.ran = 1" },
                { type: "Action.OpenUrl", title: "web", url: "https://example.com/" },
                { type: "Action.OpenUrl", title: "phone", url: "tel:+4930123" },
            ] });
            document.body.appendChild(card);
            for (const button of card.querySelectorAll("button")) button.click();
            card.remove();
            return calls;
        })()""")
        if opened != ["https://example.com/", "tel:+4930123"]:
            fail(f"a card's links opened {opened!r}, not the web and phone addresses only")
        print("browser test: passed; screenshot in docs/console.png")
    finally:
        if browser:
            browser.terminate()
            browser.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
        dev.send_signal(signal.SIGINT)
        try:
            status = dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
            fail("connector dev did not stop on Ctrl-C")
    if status != 0:
        fail(f"connector dev exited with {status} after Ctrl-C")


main()
