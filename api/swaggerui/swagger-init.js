// Starts Swagger UI on thon's OpenAPI document. It lives in its own file so
// that the page needs no inline script. The document is found relative to
// the page (/docs/ -> /openapi.json), so the API may be mounted under a prefix.
window.addEventListener("load", function () {
  "use strict";
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout"
  });
});
