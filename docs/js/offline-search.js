// Search for a site opened from disk. Over http the built-in search runs in a Web Worker; from file:// the
// browser refuses the worker and its index request, and the box stays empty. Here the same lunr index is
// built in the page from search/search_index.js (written by tools/docs_hooks.py), with the same results.
(function () {
  if (window.location.protocol !== "file:") {
    return;
  }
  var root = base_url.replace(/\/?$/, "/");

  function load(path, then) {
    var script = document.createElement("script");
    script.src = root + path;
    script.onload = then;
    document.head.appendChild(script);
  }

  function show(results, query) {
    var box = document.getElementById("mkdocs-search-results");
    box.textContent = "";
    if (!results.length) {
      var none = document.createElement("p");
      none.textContent = query ? box.getAttribute("data-no-results-text") : "";
      box.appendChild(none);
      return;
    }
    results.forEach(function (doc) {
      var article = document.createElement("article");
      var heading = document.createElement("h3");
      var link = document.createElement("a");
      link.href = root + doc.location.replace(/^([^#]*\/)?(#|$)/, "$1index.html$2");
      link.textContent = doc.title;
      heading.appendChild(link);
      var summary = document.createElement("p");
      summary.textContent = doc.text.substring(0, 200);
      article.appendChild(heading);
      article.appendChild(summary);
      box.appendChild(article);
    });
  }

  load("search/lunr.js", function () {
    load("search/search_index.js", function () {
      var data = window.tribusSearchIndex;
      var documents = {};
      if (data.config && data.config.separator) {
        lunr.tokenizer.separator = new RegExp(data.config.separator);
      }
      var index = lunr(function () {
        this.field("title");
        this.field("text");
        this.ref("location");
        data.docs.forEach(function (doc) {
          documents[doc.location] = doc;
          this.add(doc);
        }, this);
      });
      var shortest = (data.config && data.config.min_search_length) || 3;
      var input = document.getElementById("mkdocs-search-query");

      function run() {
        var query = input.value.trim();
        var results = query.length >= shortest ? index.search(query).map(function (hit) {
          return documents[hit.ref];
        }) : [];
        show(results, query);
      }

      // Replacing the input drops the built-in listener, which would post to the refused worker.
      var fresh = input.cloneNode(true);
      input.parentNode.replaceChild(fresh, input);
      input = fresh;
      input.addEventListener("keyup", run);
      var term = new URLSearchParams(window.location.search).get("q");
      if (term) {
        input.value = term;
        run();
      }
    });
  });
})();
