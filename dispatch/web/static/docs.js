// Starts Swagger UI for /docs from the package's own copy: no inline script (the
// Content-Security-Policy forbids it), nothing fetched from outside the service.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    showExtensions: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The public validator would be asked about our spec over the internet: never.
    validatorUrl: null,
  });
});
