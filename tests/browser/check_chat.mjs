// Opens bedrock_trace spans in a running MLflow UI with Debian's Chromium (driven by
// playwright-core) and checks that each renders as a chat: the expected "User" / "Assistant"
// (/ "System") cards with the expected text, visible in the chat area. Checks with a "kind"
// look at other things in the trace view: "tree" (a trace's span rows nest as its spans do,
// {"spans": [{"span_id", "name", "parent_id"}]}) and "documents" (a RETRIEVER span's outputs
// are listed as documents, {"span_id", "span_name", "documents": [{"text", "doc_uri"}]}).
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

// A fresh page for one view, with the listeners that fill the result's diagnostics (load() it).
async function openView(context, spec, check, view) {
  const result = failedResult(spec, check, view);
  result.screenshot = path.join(spec.artifacts, `${check.name}-${view}.png`);
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
  return { page, result };
}

const load = (page, result) =>
  page.goto(result.url, { waitUntil: "domcontentloaded", timeout: LOAD_TIMEOUT_MS });

// The trace view's row of a span, once visible; an error if it does not name the span.
async function spanRow(page, result, spanId, spanName, view = "trace") {
  const rowId = view === "trace" ? `span-title-row-${spanId}` : `timeline-tree-node-${spanId}`;
  const row = page.getByTestId(rowId).first();
  await row.waitFor({ state: "visible", timeout: LOAD_TIMEOUT_MS });
  const rowText = norm(await row.innerText());
  if (!rowText.includes(spanName)) {
    result.errors.push(`span row ${rowId} shows "${rowText}", not "${spanName}"`);
  }
  return row;
}

// The page text excerpt (if none yet), a screenshot, and the verdict.
async function finishView(page, result, started, scope) {
  if (scope && !result.excerpt) {
    try {
      result.excerpt = norm(await scope.first().innerText({ timeout: 2000 })).slice(0, 1500);
    } catch {
      // fall back to the page's text below
    }
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
  log(`${result.name}/${result.view}: ${result.ok ? "ok" : "FAILED"} in ${result.elapsed_ms} ms`);
  return result;
}

async function checkView(context, spec, check, view) {
  if (check.kind === "tree") return checkTree(context, spec, check);
  if (check.kind === "documents") return checkDocuments(context, spec, check);
  const started = Date.now();
  let page = null;
  let result = null;
  let scope = null;
  try {
    ({ page, result } = await openView(context, spec, check, view));
    await load(page, result);
    const row = await spanRow(page, result, check.span_id, check.span_name, view);

    if (view === "trace") {
      // The span detail: "Inputs / Outputs" tab (Pretty mode) with role cards.
      await row.click();
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
    }
  } catch (error) {
    result = result ?? failedResult(spec, check, view);
    result.errors.push(`${error.name}: ${String(error.message).split("\n")[0]}`);
  }
  return page ? finishView(page, result, started, scope) : result;
}

// A result with no verdict yet (ok false until the view's checks pass).
function failedResult(spec, check, view) {
  return {
    name: check.name,
    view,
    url: viewUrl(spec, check, view),
    ok: false,
    errors: [],
    messages: [],
    excerpt: "",
    screenshot: null,
    elapsed_ms: 0,
    blocked: [],
    http_errors: [],
    console_errors: [],
    images: [],
  };
}

// A span tree (kind "tree", trace view): every span has a visible row naming it; a child's row
// is below its parent's and indented further; siblings are indented alike.
//   check.spans: [{"span_id", "name", "parent_id" (null for the root)}]
async function checkTree(context, spec, check) {
  const started = Date.now();
  let page = null;
  let result = null;
  try {
    ({ page, result } = await openView(context, spec, check, "trace"));
    await load(page, result);
    const boxes = {};
    for (const span of check.spans) {
      const row = await spanRow(page, result, span.span_id, span.name);
      await row.scrollIntoViewIfNeeded();
      const box = await row.boundingBox();
      if (!box || !(await row.isVisible())) {
        result.errors.push(`the row of ${span.name} (${span.span_id}) is not visible`);
        continue;
      }
      boxes[span.span_id] = box;
      result.messages.push({ role: span.name, text: `x=${box.x.toFixed(0)} y=${box.y.toFixed(0)}` });
    }
    const indent = {};
    for (const span of check.spans) {
      const box = boxes[span.span_id];
      const parent = span.parent_id ? boxes[span.parent_id] : null;
      if (!box || !span.parent_id) continue;
      if (!parent) {
        result.errors.push(`${span.name}: its parent ${span.parent_id} has no row`);
        continue;
      }
      if (!(box.y > parent.y)) result.errors.push(`${span.name} is not below its parent's row`);
      if (!(box.x > parent.x)) result.errors.push(`${span.name} is not indented under its parent`);
      const siblingX = indent[span.parent_id];
      if (siblingX === undefined) indent[span.parent_id] = box.x;
      else if (Math.abs(siblingX - box.x) > 1) {
        result.errors.push(`${span.name} is indented unlike its siblings`);
      }
    }
  } catch (error) {
    result = result ?? failedResult(spec, check, "trace");
    result.errors.push(`${error.name}: ${String(error.message).split("\n")[0]}`);
  }
  return page ? finishView(page, result, started, null) : result;
}

// A RETRIEVER span's documents (kind "documents", trace view): after a click on the span's row,
// the Inputs / Outputs tab lists them with MLflow's retriever renderer, one entry per document
// with its text visible; a document opened shows its doc_uri; no raw JSON keys on screen.
//   check.documents: [{"text", "doc_uri"}]
async function checkDocuments(context, spec, check) {
  const started = Date.now();
  let page = null;
  let result = null;
  let scope = null;
  try {
    ({ page, result } = await openView(context, spec, check, "trace"));
    await load(page, result);
    const row = await spanRow(page, result, check.span_id, check.span_name);
    await row.click();
    scope = page.getByTestId("model-trace-explorer-retriever-field-renderer");
    try {
      await scope.first().waitFor({ state: "visible", timeout: RENDER_TIMEOUT_MS });
    } catch {
      result.errors.push(
        "the outputs are not listed as documents (no model-trace-explorer-retriever-field-renderer)",
      );
      return finishView(page, result, started, page.getByTestId("model-trace-explorer-content-tab"));
    }
    const renderer = scope.first();
    const entries = renderer.locator('[role="button"]');
    const probe = async () => {
      const errors = [];
      const count = await entries.count();
      if (count !== check.documents.length) {
        errors.push(`${count} document entries, expected ${check.documents.length}`);
      }
      result.messages = [];
      for (let index = 0; index < count; index += 1) {
        result.messages.push({ role: "Document", text: norm(await entries.nth(index).innerText()) });
      }
      check.documents.forEach((want, index) => {
        const got = result.messages[index]?.text ?? "";
        if (!got.includes(norm(want.text))) {
          errors.push(`document ${index} does not show ${JSON.stringify(want.text.slice(0, 60))}`);
        }
      });
      return errors;
    };
    result.errors.push(...(await settle(page, RENDER_TIMEOUT_MS, probe)));
    for (const [index, want] of check.documents.entries()) {
      const text = renderer.getByText(norm(want.text)).first();
      if ((await text.count()) === 0 || !(await text.isVisible())) {
        result.errors.push(`document ${index}'s text is not visible`);
      }
    }
    // Open the first document: its metadata, doc_uri included, is listed.
    await entries.first().click();
    const opened = async () =>
      norm(await renderer.innerText()).includes(check.documents[0].doc_uri)
        ? []
        : [`the opened document does not show its doc_uri ${check.documents[0].doc_uri}`];
    result.errors.push(...(await settle(page, RENDER_TIMEOUT_MS, opened)));
    const shown = norm(await renderer.innerText());
    if (!shown.includes("doc_uri")) result.errors.push("the opened document lists no doc_uri");
    for (const raw of ['"page_content"', "page_content:", '{"']) {
      if (shown.includes(raw)) result.errors.push(`raw JSON on screen: ${raw}`);
    }
  } catch (error) {
    result = result ?? failedResult(spec, check, "trace");
    result.errors.push(`${error.name}: ${String(error.message).split("\n")[0]}`);
  }
  return page ? finishView(page, result, started, scope) : result;
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
      const views = check.kind ? ["trace"] : (check.views ?? ["trace", "renderer"]);
      for (const view of views) {
        if (Date.now() - started > BUDGET_MS) {
          const skipped = failedResult(spec, check, view);
          skipped.errors.push(`not run: the ${BUDGET_MS} ms budget for all views was used up`);
          out.results.push(skipped);
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
