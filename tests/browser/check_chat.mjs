// Opens bedrock_trace spans in a running MLflow UI with Debian's Chromium (driven by
// playwright-core) and checks that each renders as a chat: the expected "User" / "Assistant"
// (/ "System") cards with the expected text, visible in the chat area.
//
//   node check_chat.mjs <spec.json>
//
// spec.json:
//   {"base_url": "http://127.0.0.1:PORT", "experiment_id": "1", "artifacts": "/abs/dir",
//    "checks": [{"name": "converse", "trace_id": "tr-...", "span_id": "0123abcd...",
//                "span_name": "BedrockRuntime.converse", "model": "us.anthropic...",
//                "expect": [{"role": "User", "text": "..."}, {"role": "Assistant", "text": "..."}],
//                "image": {"width": 96, "height": 64},   // optional: an image the chat shows
//                "views": ["trace", "renderer"]}]}
//
// Prints one JSON object on stdout (everything else goes to stderr):
//   {"ok": bool, "chromium": "...", "elapsed_ms": N, "fatal": null | "...",
//    "results": [{"name", "view", "url", "ok", "errors": [...], "messages": [{role, text}],
//                 "excerpt", "screenshot", "elapsed_ms", "blocked": [...], "http_errors": [...],
//                 "images": [{src, width, height, shown}]}]}
// Exit code 0 whenever the browser ran (the caller asserts on "ok"); 2 on a fatal error.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const CHROMIUM = process.env.BEDROCK_TRACE_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
// A fresh profile auto-opens an assistant side panel and a popover that cover the view.
const LOCAL_STORAGE = {
  "mlflow.assistant.panelOpen_v1": "false",
  "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
  "mlflow.detectIssues.guidanceShown_v1": "true",
};
// A view loads in 1-4 s and renders at once on a 2-core machine; failures must stay quick, so
// that even every view failing ends well within the caller's timeout.
const LOAD_TIMEOUT_MS = 20_000; // until the span's row is visible
const RENDER_TIMEOUT_MS = 8_000; // then until the chat area shows what is expected
const BUDGET_MS = Number(process.env.BEDROCK_TRACE_BROWSER_BUDGET_MS || 120_000); // all views
const ROLES = ["User", "Assistant", "System", "Tool"];

const norm = (text) => String(text ?? "").replace(/\s+/g, " ").trim();
const log = (...args) => console.error("[check_chat]", ...args);

function viewUrl(spec, check, view) {
  const base = spec.base_url.replace(/\/+$/, "");
  const exp = encodeURIComponent(spec.experiment_id);
  const trace = encodeURIComponent(check.trace_id);
  if (view === "trace") return `${base}/#/experiments/${exp}/traces/${trace}`;
  if (view === "renderer") {
    return (
      `${base}/static-files/lib/notebook-trace-renderer/index.html` +
      `?trace_id=${trace}&experiment_id=${exp}`
    );
  }
  throw new Error(`unknown view ${view}`);
}

// The chat cards inside `root`: a header (role="button") whose text is a role name, followed by
// the message body. The same structure is used by the trace view's Inputs / Outputs tab and the
// renderer's Chat tab in MLflow 3.17.
function readCards(root, roles) {
  const cards = [];
  for (const header of root.querySelectorAll('[role="button"]')) {
    const label = header.innerText.trim();
    if (!roles.includes(label)) continue;
    const body = header.nextElementSibling;
    cards.push({ role: label, text: body ? body.innerText : "" });
  }
  return cards;
}

// Poll `probe` until it returns no errors or time runs out; returns the last errors.
async function settle(page, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let errors = await probe();
  while (errors.length && Date.now() < deadline) {
    await page.waitForTimeout(250);
    errors = await probe();
  }
  return errors;
}

async function checkView(context, spec, check, view) {
  const started = Date.now();
  const url = viewUrl(spec, check, view);
  const result = {
    name: check.name,
    view,
    url,
    ok: false,
    errors: [],
    messages: [],
    excerpt: "",
    screenshot: path.join(spec.artifacts, `${check.name}-${view}.png`),
    elapsed_ms: 0,
    blocked: [],
    http_errors: [],
    console_errors: [],
    images: [],
  };
  const page = await context.newPage();
  page.on("response", (response) => {
    if (response.status() >= 400) result.http_errors.push(`${response.status()} ${response.url()}`);
  });
  page.on("console", (message) => {
    if (message.type() === "error") result.console_errors.push(message.text().slice(0, 300));
  });
  page.on("requestfailed", (request) => {
    if (!/^https?:\/\/(127\.0\.0\.1|localhost)[:/]/.test(request.url())) {
      result.blocked.push(request.url());
    }
  });
  let scope = null;
  try {
    await page.goto(url, { waitUntil: "domcontentloaded", timeout: LOAD_TIMEOUT_MS });

    // The span's row, by test id (text would also match the selected span's header).
    const rowId =
      view === "trace" ? `span-title-row-${check.span_id}` : `timeline-tree-node-${check.span_id}`;
    const row = page.getByTestId(rowId);
    await row.first().waitFor({ state: "visible", timeout: LOAD_TIMEOUT_MS });
    const rowText = norm(await row.first().innerText());
    if (!rowText.includes(check.span_name)) {
      result.errors.push(`span row ${rowId} shows "${rowText}", not "${check.span_name}"`);
    }

    if (view === "trace") {
      // The span detail: "Inputs / Outputs" tab (Pretty mode) with role cards.
      await row.first().click();
      scope = page.getByTestId("model-trace-explorer-content-tab");
      await scope.first().waitFor({ state: "visible", timeout: RENDER_TIMEOUT_MS });
      const tab = page.getByRole("tab", { name: "Inputs / Outputs", exact: true });
      if ((await tab.count()) === 0) {
        result.errors.push('no "Inputs / Outputs" tab in the span detail');
      } else if ((await tab.first().getAttribute("aria-selected")) !== "true") {
        result.errors.push('the "Inputs / Outputs" tab is not selected');
      }
    } else {
      // The renderer: the "Chat" tab must be there and selected by default (nothing clicked).
      scope = page.getByTestId("model-trace-explorer-chat-tab");
      const tab = page.getByRole("tab", { name: "Chat", exact: true });
      try {
        await scope.first().waitFor({ state: "visible", timeout: RENDER_TIMEOUT_MS });
      } catch {
        const tabs = await page.getByRole("tab").allInnerTexts();
        result.errors.push(
          `no visible Chat view (test id model-trace-explorer-chat-tab); tabs: ${JSON.stringify(tabs)}`,
        );
        scope = null;
      }
      if (scope && (await tab.count()) === 0) {
        result.errors.push('no tab named "Chat"');
      } else if (scope && (await tab.first().getAttribute("aria-selected")) !== "true") {
        result.errors.push('the "Chat" tab is not selected by default');
      }
    }

    if (scope) {
      const chat = scope.first();
      const probe = async () => {
        const errors = [];
        result.messages = await chat.evaluate(readCards, ROLES);
        for (const want of check.expect) {
          const found = result.messages.some(
            (m) => m.role === want.role && norm(m.text) === norm(want.text),
          );
          if (!found) errors.push(`no "${want.role}" card with text ${JSON.stringify(want.text)}`);
        }
        if (view === "renderer" && check.model) {
          if (!norm(await chat.innerText()).includes(check.model)) {
            errors.push(`the Chat view does not show the model ${check.model}`);
          }
        }
        if (check.image) {
          // The picture itself: loaded (decoded to its real size) and laid out on screen.
          result.images = await chat.evaluate((root) =>
            [...root.querySelectorAll("img")].map((img) => ({
              src: img.currentSrc.slice(0, 120),
              width: img.naturalWidth,
              height: img.naturalHeight,
              shown: img.complete && img.getBoundingClientRect().width > 0,
            })),
          );
          const { width, height } = check.image;
          if (!result.images.some((i) => i.shown && i.width === width && i.height === height)) {
            errors.push(`no ${width}x${height} image shown in the chat`);
          }
        }
        return errors;
      };
      result.errors.push(...(await settle(page, RENDER_TIMEOUT_MS, probe)));
      // Visible on screen, not just in the DOM.
      for (const want of check.expect) {
        const text = norm(want.text);
        const hit = chat.getByText(text).first();
        if ((await hit.count()) === 0 || !(await hit.isVisible())) {
          result.errors.push(`${want.role} text ${JSON.stringify(text)} is not visible`);
        }
      }
      result.excerpt = norm(await chat.innerText()).slice(0, 1500);
    }
  } catch (error) {
    result.errors.push(`${error.name}: ${String(error.message).split("\n")[0]}`);
  }
  if (!result.excerpt) {
    try {
      result.excerpt = norm(await page.locator("body").innerText({ timeout: 2000 })).slice(0, 1500);
    } catch {
      result.excerpt = "(page text unavailable)";
    }
  }
  try {
    await page.screenshot({ path: result.screenshot, timeout: 10_000 });
  } catch (error) {
    result.errors.push(`screenshot failed: ${String(error.message).split("\n")[0]}`);
    result.screenshot = null;
  }
  await page.close();
  result.ok = result.errors.length === 0;
  result.elapsed_ms = Date.now() - started;
  log(`${check.name}/${view}: ${result.ok ? "ok" : "FAILED"} in ${result.elapsed_ms} ms`);
  return result;
}

async function main() {
  const started = Date.now();
  const out = { ok: false, chromium: null, elapsed_ms: 0, fatal: null, results: [] };
  let context = null;
  let profile = null;
  try {
    const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
    fs.mkdirSync(spec.artifacts, { recursive: true });
    const { chromium } = await import("playwright-core");
    profile = fs.mkdtempSync(path.join(os.tmpdir(), "bedrock-trace-chromium-"));
    // launchPersistentContext passes the fresh profile as --user-data-dir.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
      timeout: 60_000,
    });
    const first = context.pages()[0] ?? (await context.newPage());
    out.chromium = await first.evaluate(() => navigator.userAgent);
    await context.addInitScript((items) => {
      try {
        for (const [key, value] of Object.entries(items)) window.localStorage.setItem(key, value);
      } catch {
        // storage unavailable (opaque origin): nothing to dismiss
      }
    }, LOCAL_STORAGE);
    // Fully offline: anything that is not the MLflow server on loopback is refused.
    await context.route(
      (url) => !["127.0.0.1", "localhost"].includes(url.hostname),
      (route) => route.abort("blockedbyclient"),
    );
    for (const check of spec.checks) {
      for (const view of check.views ?? ["trace", "renderer"]) {
        if (Date.now() - started > BUDGET_MS) {
          out.results.push({
            name: check.name,
            view,
            url: viewUrl(spec, check, view),
            ok: false,
            errors: [`not run: the ${BUDGET_MS} ms budget for all views was used up`],
            messages: [],
            excerpt: "",
            screenshot: null,
            elapsed_ms: 0,
            blocked: [],
            http_errors: [],
            console_errors: [],
          });
          continue;
        }
        out.results.push(await checkView(context, spec, check, view));
      }
    }
    out.ok = out.results.length > 0 && out.results.every((r) => r.ok);
  } catch (error) {
    out.fatal = `${error.name}: ${error.message}`;
  } finally {
    if (context) await context.close().catch(() => {});
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  }
  out.elapsed_ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exitCode = out.fatal ? 2 : 0;
}

await main();
