// The explorer page's parts, compiled into the library (cmake/embed_files.cmake generates their
// definitions from explore/page/ and Debian's dagre.min.js when the library is built).
#pragma once

#include <string_view>

namespace fovea::explore {

std::string_view page_html();  // the skeleton, with /*FOVEA_...*/ markers where the parts go
std::string_view page_css();
std::string_view page_js();
// The layered graph layout engine (Debian's node-dagre-layout); empty when it was not installed
// when the library was built.
std::string_view dagre_js();

}  // namespace fovea::explore
