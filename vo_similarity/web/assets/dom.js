// DOM helpers shared by every module: element lookup by id and element creation.
//
// All server text goes in through textContent / setAttribute: never innerHTML with data.

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
