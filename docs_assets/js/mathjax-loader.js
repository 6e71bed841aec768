// Local MathJax 3 for notebook pages (no CDN). mkdocs-jupyter puts this script at
// the top of each notebook page (custom_mathjax_url in mkdocs.yml). MathJax itself
// (assets/vendor/mathjax/tex-svg.js, self-contained SVG output) is only loaded when
// the notebook contains TeX delimiters, and it only typesets the notebook content.
//
// ipywidgets (html-manager) typesets widget labels with the MathJax 2 API
// (MathJax.Hub.Queue) whenever window.MathJax exists, so a small MathJax.Hub
// stand-in that forwards to MathJax 3 is kept on the global object.
(function () {
  if (window.MathJax) return;
  var here = document.currentScript && document.currentScript.src;
  if (!here) return;
  var src = new URL("../assets/vendor/mathjax/tex-svg.js", here).href;
  var MATH = /\$[^$\s]|\\\(|\\\[|\\begin\{/;

  function notebooks() {
    return Array.prototype.slice.call(document.querySelectorAll(".jupyter-wrapper"));
  }
  function typeset(els) {
    var mj = window.MathJax;
    if (mj && mj.typesetPromise) mj.typesetPromise(els).catch(function (e) { console.warn("MathJax:", e); });
  }
  var hub = {
    Config: function () {},
    Typeset: function (el) { typeset(el ? [el] : notebooks()); },
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        if (typeof job === "function") job();
        else if (Array.isArray(job) && job[0] === "Typeset") typeset(job[2] ? [job[2]] : notebooks());
      }
    },
  };

  window.MathJax = {
    Hub: hub,
    tex: {
      inlineMath: [["$", "$"], ["\\(", "\\)"]],
      displayMath: [["$$", "$$"], ["\\[", "\\]"]],
      processEscapes: true,
      processEnvironments: true,
    },
    svg: { fontCache: "global" },
    options: { enableMenu: false },
    startup: {
      typeset: false,
      ready: function () {
        MathJax.startup.defaultReady();
        MathJax.Hub = hub;
      },
      pageReady: function () {
        return MathJax.startup.defaultPageReady().then(function () {
          return MathJax.typesetPromise(notebooks());
        });
      },
    },
  };

  function load() {
    var hasMath = notebooks().some(function (el) {
      var text = Array.prototype.map.call(
        el.querySelectorAll(".jp-MarkdownOutput, .jp-RenderedMarkdown, .jp-RenderedLatex, .jp-RenderedHTMLCommon"),
        function (e) { return e.textContent; }).join("\n");
      return MATH.test(text);
    });
    if (!hasMath) return;
    var s = document.createElement("script");
    s.src = src;
    s.async = true;
    s.id = "MathJax-script";
    document.head.appendChild(s);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", load);
  else load();
})();
