/* ReDoc's sidebar footer ("API docs by Redocly") always draws Redocly's logo from cdn.redoc.ly, and no
 * ReDoc option turns it off. These docs load nothing from outside this server, so that one image gets an
 * empty local picture instead, whether its address is set as an attribute or as a property. Loaded before
 * ReDoc's bundle, on the ReDoc page only. */
"use strict";

(function () {
  const REMOTE_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg";
  const EMPTY_PICTURE = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E";
  const local = (value) => (String(value) === REMOTE_LOGO ? EMPTY_PICTURE : value);
  const image = HTMLImageElement.prototype;
  const setAttribute = Element.prototype.setAttribute;
  image.setAttribute = function (name, value) {
    return setAttribute.call(this, name, name === "src" ? local(value) : value);
  };
  const src = Object.getOwnPropertyDescriptor(image, "src");
  Object.defineProperty(image, "src", {
    configurable: true,
    enumerable: src.enumerable,
    get() { return src.get.call(this); },
    set(value) { src.set.call(this, local(value)); },
  });
})();
