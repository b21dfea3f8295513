// Swagger UI over the generated OpenAPI document (docs/openapi.json, `make openapi`). The API's base is
// this page's own (`<base>/docs` → `<base>`), so "Try it out" works under an API Gateway stage too.
(function () {
  var base = window.location.href.split("#")[0].split("?")[0].replace(/\/docs\/?$/, "");
  fetch(base + "/docs/openapi.json")
    .then(function (reply) { return reply.json(); })
    .then(function (spec) {
      spec.servers = [{ url: base }];
      window.SwaggerUIBundle({ spec: spec, dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: false });
    })
    .catch(function (err) {
      document.getElementById("swagger-ui").textContent = "OpenAPI document not loaded: " + err;
    });
})();
