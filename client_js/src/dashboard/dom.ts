// Tiny DOM helpers: the dashboard is plain DOM (no framework), built with h() so that text
// always goes in as text (never innerHTML: titles and ids come from the server).

type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} missing from dashboard.html`);
  return el as T;
};

/** A titled panel; every panel names its unit in the title (Grafana's habit). */
export function panel(title: string, unit: string, ...body: (Child | Child[])[]): HTMLElement {
  const id = `p-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "panel", "aria-labelledby": id },
    h("h3", { id }, title, unit ? h("span", { class: "unit" }, ` (${unit})`) : null), ...body);
}

/** A label wrapping its control, so every control has an accessible name. */
export function labelled(text: string, control: HTMLElement, hint = ""): HTMLLabelElement {
  return h("label", { class: "field" }, h("span", {}, text), control, hint ? h("small", {}, hint) : null);
}

export function clear(el: HTMLElement): HTMLElement {
  el.replaceChildren();
  return el;
}
