// Safe DOM building. Text always goes in as text (textContent or text
// nodes), never as markup: nothing in the client uses innerHTML, so a room
// name or a username can never become HTML.

/**
 * A child given to h: a node, text, or nothing (skipped). Arrays nest.
 * @typedef {Node | string | number | null | undefined | false | ChildList} Child
 * @typedef {ReadonlyArray<Child>} ChildList
 */

/**
 * Attributes given to h. A function under a name starting with "on" is an
 * event listener ("onclick" listens to "click"); true sets an empty
 * attribute, false, null and undefined set nothing; "value", "checked" and
 * "selected" set the element's property; anything else is set with
 * setAttribute (which never parses markup).
 * @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Attrs
 */

const properties = new Set(['value', 'checked', 'selected']);

/**
 * Creates an element with attributes and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === false || value === null || value === undefined) continue;
      if (typeof value === 'function') {
        if (!name.startsWith('on')) throw new TypeError(`h: function given for attribute ${name}`);
        el.addEventListener(name.slice(2), value);
      } else if (properties.has(name)) {
        /** @type {any} */ (el)[name] = value;
      } else {
        el.setAttribute(name, value === true ? '' : String(value));
      }
    }
  }
  append(el, children);
  return el;
}

/**
 * Appends children to a node, as h does.
 * @param {Node} parent
 * @param {ReadonlyArray<Child>} children
 */
export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) {
      append(parent, child);
    } else if (child instanceof Node) {
      parent.appendChild(child);
    } else {
      parent.appendChild(document.createTextNode(String(child)));
    }
  }
}

/**
 * Replaces every child of parent.
 * @param {Element} parent
 * @param {...Child} children
 */
export function replace(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/**
 * Returns the element with this id, failing loudly when it is missing.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no element #${id}`);
  return el;
}
